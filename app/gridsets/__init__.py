"""Grid sets as stored versions: import, storage and the live swap of the index (the geometry
itself is geo/).
"""
