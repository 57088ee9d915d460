from scenescape.cli import main

main()
