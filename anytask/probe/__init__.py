"""``anytask probe``: small real experiments with each library's own API, checking the survey's feature claims."""
