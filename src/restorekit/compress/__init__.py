"""Bicubic++ compression: global structured pruning, bias removal, and the three-stage pipeline
(``restorekit compress``)."""
