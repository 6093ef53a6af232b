"""The film's assets, one module per stage of the seed's stage table."""
