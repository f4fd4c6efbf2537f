from tcpanalyze.cli import entry

entry()
