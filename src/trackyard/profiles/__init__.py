"""Profiles: the people and accounts behind the events, built by a consumer of the log (issue 4).

The consumer runs under the consumer supervisor (:mod:`trackyard.consumers`), never inside
an HTTP worker; :mod:`trackyard.profiles.consumer` is its sink and its status.
"""
