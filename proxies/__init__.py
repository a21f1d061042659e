"""Scorers for any `nn.Module`, knowing nothing of search spaces: `flops` (fvcore counts with a rule
for every op), `latency` (device profiles, the timing harness, latency tables, backends),
`zero_cost` (data-free and one-batch accuracy proxies) and `onnx_export`.

A leaf package: it depends only on torch, fvcore, numpy, onnx/onnxruntime and the standard library.
"""
