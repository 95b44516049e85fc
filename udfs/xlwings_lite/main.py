"""salessheet functions for Excel anywhere through xlwings Lite (Python in the browser, Pyodide).

Paste this file into the xlwings Lite editor's main.py and requirements.txt beside it into its
requirements.txt tab. Only the engine core is imported (pandas/numpy; no compiled extension), so it
runs under Pyodide. Lite's custom functions cannot read the workbook on their own: pass the tables,
e.g. =WINRATE(Deals[#All]) or =CAC(Deals[#All],,"North",,,Costs[#All]). An undefined result raises,
which Lite shows as #VALUE! with the reason in the cell's error tooltip.
"""
from xlwings import arg, func, ret

from salessheet import udf


def _value(name, *args):
    result = udf.evaluate(name, args)
    if isinstance(result, udf.UDFError):
        raise ValueError(str(result))
    return result


@func
@arg("data", ndim=2)
def WINRATE(data=None, owner=None, team=None, start=None, end=None):
    """Won / (won + lost) of the deals closed in the period."""
    return _value("WINRATE", data, owner, team, start, end)


@func
@arg("data", ndim=2)
def REVENUE(data=None, owner=None, team=None, start=None, end=None):
    """Sum of Amount of the deals won in the period."""
    return _value("REVENUE", data, owner, team, start, end)


@func
@arg("data", ndim=2)
def SALESVOLUME(data=None, owner=None, team=None, start=None, end=None):
    """Sum of Units of the deals won in the period (blank Units counts as 1)."""
    return _value("SALESVOLUME", data, owner, team, start, end)


@func
@arg("data", ndim=2)
def AVGDEALSIZE(data=None, owner=None, team=None, start=None, end=None):
    """Revenue / number of deals won in the period."""
    return _value("AVGDEALSIZE", data, owner, team, start, end)


@func
@arg("data", ndim=2)
def SALESCYCLE(data=None, owner=None, team=None, start=None, end=None):
    """Mean days from Created Date to Closed Date of the deals won in the period."""
    return _value("SALESCYCLE", data, owner, team, start, end)


@func
@arg("data", ndim=2)
def CONVERSIONRATE(data=None, owner=None, team=None, start=None, end=None):
    """Share of the leads created in the period whose Status is Converted (data: the Leads table)."""
    return _value("CONVERSIONRATE", data, owner, team, start, end)


@func
@arg("data", ndim=2)
@arg("costs", ndim=2)
def CAC(data=None, owner=None, team=None, start=None, end=None, costs=None):
    """Sales + marketing costs / new customers in the period (costs: the Costs table)."""
    return _value("CAC", data, owner, team, start, end, costs)


@func
@arg("data", ndim=2)
def PIPELINE(data=None, owner=None, team=None, start=None, end=None):
    """Sum of Amount of open deals expected to close in the period."""
    return _value("PIPELINE", data, owner, team, start, end)


@func
@arg("data", ndim=2)
def WEIGHTEDPIPELINE(data=None, owner=None, team=None, start=None, end=None):
    """Sum of Amount x Probability of open deals expected to close in the period."""
    return _value("WEIGHTEDPIPELINE", data, owner, team, start, end)


@func
@arg("data", ndim=2)
def SALESFORECAST(data=None, owner=None, team=None, start=None, end=None):
    """Revenue of the period + weighted pipeline of the period."""
    return _value("SALESFORECAST", data, owner, team, start, end)


@func
@arg("data", ndim=2)
def SALESVELOCITY(data=None, owner=None, team=None, start=None, end=None):
    """Open deals x average deal size x win rate / sales cycle: revenue per day."""
    return _value("SALESVELOCITY", data, owner, team, start, end)


@func
@arg("data", ndim=2)
@arg("targets", ndim=2)
def QUOTAATTAINMENT(data=None, owner=None, team=None, start=None, end=None, targets=None):
    """Revenue / quota of the period (targets: the Targets table)."""
    return _value("QUOTAATTAINMENT", data, owner, team, start, end, targets)


@func
@arg("data", ndim=2)
@ret(index=False, header=False)
def KPITABLE(data=None, by=None, start=None, end=None):
    """Every KPI for every owner/team/month/quarter in one array (header row first)."""
    return _value("KPITABLE", data, by, start, end)
