"""bench_suite.py's parts: data (inputs), timing, engines, sections, report, plot."""
