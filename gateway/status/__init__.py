"""What a technician sees: the station's status, answered live by the running service over a
Unix socket or read from the database when it is down, and rendered for the terminal.
"""
