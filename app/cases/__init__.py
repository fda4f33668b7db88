"""The case domain: the vocabulary of states, case events and their tamper-evident chain, queries
shared by intake and the engine, and the centre's figures.
"""
