"""The ground floor: what every other part of Coworker stands on.

Settings, `coworker.toml`, errors, the database and its migrations, the clock and secret
redaction. These modules import nothing of Coworker above them (a test reads the imports to
keep it so), and `tools/` and `memory/` import nothing of `bot/` but these.
"""
