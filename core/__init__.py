"""The ground floor: the scenario schema, the ledger of balance sheets and contracts, the market
processes and the observed data that can drive them, the secondary-market and interbank clearing, and
the random streams. Agents and the model both build on it; it imports nothing of theirs
(tests/test_import_graph.py)."""
