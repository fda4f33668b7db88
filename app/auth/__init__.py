"""Who is calling: bearer tokens, gridflow's own and a city's identity provider's."""
