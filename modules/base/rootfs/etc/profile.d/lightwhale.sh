# Lightwhale runs software as containers; these save typing.
alias d='docker'
alias d-c='docker compose'
