"""Helpers shared by the tests: free ports, real peer processes (redis-server, SIPp, the daemon)."""
