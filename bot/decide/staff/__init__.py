"""Staff mail: authentication, commands, their actions, status and the digest."""
