"""Programme schedules: the routine broadcasts of an ordinary day (docs/protocol.md §10).

`model` parses and checks a schedule, `book` keeps the schedules in force (highest version
per key and id, persisted in the station database), `timetable` turns them into dated
occurrences, and `scheduler` plays each occurrence under every alert as a `routine` broadcast.
"""
