from sdeval.cli import run

run()
