"""Media in and events out: camera, microphone and file sources, audio conversion, event sinks."""
