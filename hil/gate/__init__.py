"""The promotion gate: a policy (gate.yaml), the run's results, a decision, a ledger."""
