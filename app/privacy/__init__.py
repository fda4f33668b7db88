"""Residents' data rights: erasure on request, retention after a case closes, the log of staff
reads of personal data. What a resident can download is a read model (app/reads/personal.py).
"""
