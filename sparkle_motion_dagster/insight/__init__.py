"""What the runs tell us: the catalog of every film's files, provenance, replay, quality reports and
the time and memory estimates drawn from history and published figures."""
