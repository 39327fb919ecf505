from geomill.cli import main

main()
