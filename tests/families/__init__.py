"""Model families defined outside mloop, as a user would write them (tests/test_families.py)."""
