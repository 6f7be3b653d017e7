"""Deployment: compiled-model artifacts (``artifact``), end-to-end latency with the plain
TVM runtime (``measure``) and RPC plumbing with bounded waits (``rpc``)."""
