"""The sharing catalogue and access applications, free of any transport.

`catalogue` says who owns each record type and how it is shared; `calendar` counts
working days for decision periods; `applications` runs the application lifecycle and
computes a caller's effective grant (the static policy plus its live store grants) for
the lookup path.
"""
