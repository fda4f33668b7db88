"""SLA policies as data: the validated document, the bundled catalogue, and the process's caches of
categories and policies.
"""
