"""The mutation check's list of mutants is well-formed against the current
sources (cheap: no mutant is run). When this fails, the code a mutant
breaks has drifted: update the mutant in tools/dev/mutation_check.py."""


def test_every_mutant_snippet_is_found_exactly_once(load_script):
    check = load_script('tools/dev/mutation_check.py')
    assert len(check.MUTANTS) >= 12
    assert check.check_mutants(check.MUTANTS) == []


def test_check_reports_drifted_and_duplicate_mutants(load_script):
    check = load_script('tools/dev/mutation_check.py')
    good = check.MUTANTS[0]
    drifted = check.Mutant('drifted', good.path, 'no such code ' * 3, 'x',
                           good.tests)
    problems = check.check_mutants([good, good, drifted])
    assert any('duplicate' in p for p in problems)
    assert any(p.startswith('drifted: snippet found 0 times')
               for p in problems)
