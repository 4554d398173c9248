"""Publishing a corpus: its dataset card (`card`), `croissant.json` (`croissant`), what a push
uploads, deletes and keeps (`hub`), and the Hub client those commits go through (`client`)."""
