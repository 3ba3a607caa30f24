from kexec_py.cli import main

main()
