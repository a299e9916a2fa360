"""Simulated manipulation tasks behind one environment contract (see the tasks issue)."""
