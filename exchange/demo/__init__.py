"""The demo world: simulated department systems, the launcher that runs them, the tour.

- `exchange.demo.world`: the synthetic residents, companies, real estate and social
  insurance, generated reproducibly from a seed;
- `exchange.demo.departments`: the four department systems, each run as a process;
- `exchange.demo.launcher`: `DemoWorld`, which starts them and builds the hub settings;
- `exchange.demo.story`: the lookup part of the story, told against a running world;
- `exchange.demo.tour`: `run_tour`, the whole walkthrough `tongban demo` runs.

Nothing heavy is imported here: department processes import this package and need none
of the hub.
"""
