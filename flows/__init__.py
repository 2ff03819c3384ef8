"""Prefect flows of seqlab: training, forecasting and promotion. Thin: each task wraps one
``seqlab`` function."""
