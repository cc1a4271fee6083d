"""The agents: borrowers (Miner, NeoCloud), lenders (Bank, CreditFund, ABSTrust, BondInvestors), buyers."""

from agents.balance_sheet import BalanceSheetAgent
from agents.borrower import Borrower
from agents.hardware_buyer import HardwareBuyer
from agents.lender import ABSTrust, Bank, BondInvestors, CreditFund, Lender
from agents.miner import Miner
from agents.neocloud import NeoCloud

__all__ = [
    "ABSTrust",
    "BalanceSheetAgent",
    "Bank",
    "BondInvestors",
    "Borrower",
    "CreditFund",
    "HardwareBuyer",
    "Lender",
    "Miner",
    "NeoCloud",
]
