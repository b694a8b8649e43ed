"""Scenario simulator and detection-coverage bench for nhi-convergence."""
