import os

_notes = []  # a module global: kept for as long as the container serves calls


def apply(input):
    found = {"tmp": sorted(name[len("leftover-"):] for name in os.listdir("/tmp")
                           if name.startswith("leftover-")),
             "globals": list(_notes)}
    note = (input or {}).get("note")
    if note:
        with open(f"/tmp/leftover-{note}", "w") as handle:
            handle.write(note)
        _notes.append(note)
    return found
