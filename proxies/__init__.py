"""Cheap, model-free cost proxies (parameters, MACs, FLOPs) for candidate networks.

A leaf package: it depends only on torch, fvcore, numpy and the standard library.
"""
