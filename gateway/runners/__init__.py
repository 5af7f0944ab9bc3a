"""Runners: the shell runner spawns processes, the query runner talks to data sources.

They know nothing of Flask, requests or users, so they are tested with real
processes and real databases and no server.
"""
