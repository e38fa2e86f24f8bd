"""The centre's side of the protocol: the tools that build, sign and publish alerts, commands
and programme schedules, and the demo's stand-in centre.
"""
