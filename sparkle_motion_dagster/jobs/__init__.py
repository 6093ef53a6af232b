"""Jobs that are not a selection of film assets: ``new_film`` starts a film from the UI."""
