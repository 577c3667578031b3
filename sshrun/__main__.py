from sshrun.cli import main

main()
