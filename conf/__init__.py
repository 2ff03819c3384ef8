"""seqlab's shipped configurations, installed as the package ``seqlab.conf`` so that they are
found from any folder: ``seqlab run`` (no config) reads ``seqlab:default.yaml``, and a config of
your own can start from ``defaults: [seqlab:base.yaml]`` (see ``seqlab init``)."""
