"""Where a film's files live and how they are made: the artifact store and its atomic writes, paths
confined to the artifact root, scratch folders, file records (size and sha256), the per-item render
loop and its cache, and the state folder's location."""
