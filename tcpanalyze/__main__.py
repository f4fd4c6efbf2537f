from tcpanalyze.cli import main

main()
