"""The staff's view of webhook subscriptions and their delivery log.

A subscription is added through ``webhooks.services`` (which checks where its URL leads and
makes its secret, shown once); after that only its active flag changes here, through the
re-enable action. The delivery log is read-only, with a "retry now" action.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from events.models import Event
from webhooks import network
from webhooks.exceptions import UrlRefused, WebhooksError
from webhooks.models import Delivery, Subscription
from webhooks.services import (
    EVERYONE_PERMISSION,
    delivery_retry_now,
    subscription_create,
    subscription_enable,
)

if TYPE_CHECKING:
    SubscriptionAdminBase = admin.ModelAdmin[Subscription]
    DeliveryAdminBase = admin.ModelAdmin[Delivery]
    SubscriptionFormBase = forms.ModelForm[Subscription]
else:
    SubscriptionAdminBase = DeliveryAdminBase = admin.ModelAdmin
    SubscriptionFormBase = forms.ModelForm


class SubscriptionAddForm(SubscriptionFormBase):
    event_types = forms.MultipleChoiceField(
        choices=Event.Type.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None: every type.",
    )

    class Meta:
        model = Subscription
        fields = ["owner", "url", "event_types", "all_owners"]

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean() or {}
        owner = cleaned.get("owner")
        if (
            cleaned.get("all_owners")
            and owner is not None
            and not owner.has_perm(EVERYONE_PERMISSION)
        ):
            self.add_error(
                "all_owners", "Only people who may view every timesheet can receive everyone's."
            )
        return cleaned

    def clean_url(self) -> str:
        url: str = self.cleaned_data["url"]
        try:
            network.check_url(url)
        except UrlRefused as refused:
            raise forms.ValidationError(refused.message) from None
        return url


@admin.register(Subscription)
class SubscriptionAdmin(SubscriptionAdminBase):
    list_display = [
        "id",
        "owner",
        "url",
        "is_active",
        "consecutive_failures",
        "disabled_at",
        "disabled_reason",
        "created_at",
    ]
    list_filter = ["is_active"]
    search_fields = ["url", "owner__username"]
    actions = ["reenable_selected"]
    readonly_fields = [
        "owner",
        "url",
        "event_types",
        "all_owners",
        "is_active",
        "created_at",
        "after_event_id",
        "consecutive_failures",
        "disabled_at",
        "disabled_reason",
    ]
    exclude = ["secret"]  # shown once, when the subscription is added

    def get_form(
        self,
        request: HttpRequest,
        obj: Subscription | None = None,
        change: bool = False,
        **kwargs: Any,
    ) -> Any:
        if obj is None:
            kwargs["form"] = SubscriptionAddForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_readonly_fields(self, request: HttpRequest, obj: Subscription | None = None) -> Any:
        return self.readonly_fields if obj is not None else []

    def get_exclude(self, request: HttpRequest, obj: Subscription | None = None) -> Any:
        return self.exclude if obj is not None else None

    def get_fields(self, request: HttpRequest, obj: Subscription | None = None) -> Any:
        if obj is None:
            return SubscriptionAddForm.Meta.fields
        return super().get_fields(request, obj)

    def save_model(self, request: HttpRequest, obj: Subscription, form: Any, change: bool) -> None:
        if change:
            return  # nothing is editable after creation
        try:
            created = subscription_create(
                owner=obj.owner,
                url=obj.url,
                event_types=form.cleaned_data["event_types"],
                all_owners=obj.all_owners,
            )
        except WebhooksError as refused:
            # Checked by the form already; the URL may resolve elsewhere a moment later.
            messages.error(request, refused.message)
            return
        obj.pk = created.pk
        messages.warning(
            request, f"The signing secret, shown only now: {created.secret}", extra_tags="secret"
        )

    @admin.action(description="Re-enable selected subscriptions", permissions=["change"])
    def reenable_selected(self, request: HttpRequest, queryset: QuerySet[Subscription]) -> None:
        count = subscription_enable(subscriptions=queryset.values_list("pk", flat=True))
        messages.success(request, f"Re-enabled {count} subscription(s).")


@admin.register(Delivery)
class DeliveryAdmin(DeliveryAdminBase):
    list_display = [
        "id",
        "subscription",
        "event",
        "attempts",
        "last_status_code",
        "last_latency_ms",
        "last_error",
        "next_attempt_at",
        "delivered_at",
        "gave_up_at",
    ]
    list_filter = ["delivered_at", "gave_up_at"]
    list_select_related = ["subscription", "event"]
    actions = ["retry_now"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Delivery | None = None) -> bool:
        return False

    def has_retry_permission(self, request: HttpRequest) -> bool:
        # The log is read-only, yet retrying changes a delivery: it takes the right to change.
        return request.user.has_perm("webhooks.change_delivery")

    @admin.action(description="Retry selected deliveries now", permissions=["retry"])
    def retry_now(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> None:
        count = delivery_retry_now(deliveries=queryset.values_list("pk", flat=True))
        messages.success(request, f"{count} delivery(ies) will be retried at the next run.")
