"""Retention and compaction of the log: the policy (``policy.py``) and the consumer that
applies it in the background (``consumer.py``); ``trackyard store`` runs it by hand."""
