"""factory-boy factories for the blog; they write to the running test's database."""

import factory
from django.contrib.auth import get_user_model
from factory.django import DjangoModelFactory

from testproject.blog import models
from tests.routing import current_alias


class Factory(DjangoModelFactory):
    class Meta:
        abstract = True

    @classmethod
    def _get_manager(cls, model_class):
        return model_class._default_manager.db_manager(current_alias.get())


class AuthorFactory(Factory):
    class Meta:
        model = models.Author

    name = factory.Sequence(lambda n: f"Author {n}")
    email = factory.LazyAttribute(lambda o: f"{o.name.lower().replace(' ', '.')}@example.com")


class TagFactory(Factory):
    class Meta:
        model = models.Tag

    name = factory.Sequence(lambda n: f"tag{n}")


class PostFactory(Factory):
    class Meta:
        model = models.Post
        skip_postgeneration_save = True

    author = factory.SubFactory(AuthorFactory)
    title = factory.Sequence(lambda n: f"Post {n}")
    slug = factory.Sequence(lambda n: f"post-{n}")
    body = factory.Faker("paragraph")
    rating = factory.Sequence(lambda n: n % 5)

    @factory.post_generation
    def tags(self, create, extracted, **kwargs):
        if create and extracted:
            self.tags.add(*extracted)


class FeaturedPostFactory(PostFactory):
    class Meta:
        model = models.FeaturedPost

    headline = factory.Sequence(lambda n: f"Headline {n}")


class CommentFactory(Factory):
    class Meta:
        model = models.Comment

    post = factory.SubFactory(PostFactory)
    author_name = factory.Sequence(lambda n: f"reader{n}")
    body = "Nice post."


class CategoryFactory(Factory):
    class Meta:
        model = models.Category

    name = factory.Sequence(lambda n: f"Category {n}")


class UserFactory(Factory):
    class Meta:
        model = get_user_model()

    username = factory.Sequence(lambda n: f"user{n}")
