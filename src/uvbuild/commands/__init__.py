"""The CLI's other commands: doctor, inspect, cache, init."""
