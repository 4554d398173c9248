"""The read side of a corpus: `manifest` (read it, pick a split's shards, check files before
reading them), `verify` (`afg verify`), `columns` (the one column reader of table shards),
`loader` (`load`, `dataloader`, `stream`) over `tarshards` and `shardcolumns`. Nothing here
imports the build: no model, source or attack code."""
