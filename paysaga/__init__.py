"""paysaga: the command line, settings and the dev stack that starts everything locally."""
