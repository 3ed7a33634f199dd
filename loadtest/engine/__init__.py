"""The engine: connections, the closed-loop users, the open-loop dispatcher and pool, the worker."""
