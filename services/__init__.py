"""The service processes. They never import each other; they share bus/ and core/."""
