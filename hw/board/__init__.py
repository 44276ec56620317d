"""The core on a board: a UART, the framed serial link, and the board top."""
