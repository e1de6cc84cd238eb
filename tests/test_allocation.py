"""host/allocation.py: the Farmer owns farms and leases; a vector env holds one Allocation (at most
one lease per farm) and gives it back whole."""
import numpy as np

import farmer


def farmer_of(*farms):
    return farmer.Farmer(farms=[('127.0.0.1', f.farm.capacity, f.port) for f in farms],
                         start_local=False)


def test_an_allocation_holds_one_lease_per_farm_and_gives_them_back_whole(thread_farm):
    a, b = thread_farm(capacity=2), thread_farm(capacity=2)
    with farmer_of(a, b) as fm:
        allocation = fm.allocation()
        link_a, link_b = fm.links
        token = allocation.lease(link_a)
        assert allocation.lease(link_a) == token  # the same lease: not a second one
        assert allocation.lease(link_b, open_new=False) is None
        allocation.lease(link_b)
        assert sorted(t for _, t in fm.leases()) == sorted(t for _, t in allocation.leases())
        assert [a.proxy().info()['leases'], b.proxy().info()['leases']] == [1, 1]
        allocation.close()
        assert allocation.leases() == [] and fm.leases() == []  # no longer renewed either
        assert [a.proxy().info()['leases'], b.proxy().info()['leases']] == [0, 0]


def test_drop_forgets_a_lease_without_closing_it(thread_farm):
    """A lease the farm forgot (or a lost farm's) is dropped: not renewed, not closed again;
    the next build there opens a fresh one."""
    a = thread_farm(capacity=2)
    with farmer_of(a) as fm:
        allocation = fm.allocation()
        link = fm.links[0]
        old = allocation.lease(link)
        allocation.drop(link, 'some other token')  # not that lease: nothing happens
        assert allocation.lease(link, open_new=False) == old
        allocation.drop(link, old)
        assert allocation.lease(link, open_new=False) is None and fm.leases() == []
        assert allocation.lease(link) != old


def test_rebuilt_environments_join_the_lease_of_their_new_farm(thread_farm):
    """Environments rebuilt on a farm where the vector env already has some go into that same
    lease: one lease per farm per vector env, so one receiver per farm."""
    a, b = thread_farm(capacity=4), thread_farm(capacity=2)
    with farmer_of(a, b) as fm:
        fm.links[0].capacity = 2  # the plan puts 2 on each; a has room for b's after
        env = fm.vec_env('CheapEnv', 4, {'episode_length': 100})
        on_b = [i for i, p in enumerate(env.places) if p.link.port == b.port]
        assert len(on_b) == 2
        env.reset()
        b.close()  # b is gone (its farm first: our lease there, then its daemon)
        infos = env.step(np.full((4, 2), 0.5))[4]
        assert all(infos[i].get('lost_cause') in ('farm', 'lease') for i in on_b)
        assert {p.link.port for p in env.places} == {a.port}
        assert len(set(p.lease for p in env.places)) == 1
        assert a.proxy().info()['leases'] == 1 and a.proxy().info()['in_use'] == 4


def test_a_vector_env_stops_being_counted_when_closed(thread_farm):
    a = thread_farm(capacity=3)
    with farmer_of(a) as fm:
        env = fm.vec_env('CheapEnv', 3, {})
        assert fm.utilization() == 1.0
        env.close()
        assert fm.utilization() == 0.0
        again = fm.vec_env('CheapEnv', 3, {})  # all 3 free again
        assert again.reset().shape == (3, 3)
