"""Benchmarks and drills, each a command (``python bench/NAME.py --help``) that prints figures as
JSON; the tests import some of them to run them small. They may import anything of the project
(they measure it from the outside, as a user would), and nothing imports them but tests and each
other."""
