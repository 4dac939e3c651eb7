"""What tests share: files and folders to index, tiny models, servers and checks on a
store. One module per kind of thing; the test files mirror the modules of localrag/."""
